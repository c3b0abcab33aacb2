"""scripts/compare: runs workloads under several malloc implementations."""
