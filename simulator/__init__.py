"""SimPy model of a continuous-batching speculative-decoding server fed by a workload."""
