"""Distance-based regularisation (docs/methods.md §2): norms of W - W^(s), projections and penalties."""
