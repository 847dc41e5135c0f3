"""Distance-based regularisation (SPEC §2): norms of W - W^(s), projections and penalties."""
