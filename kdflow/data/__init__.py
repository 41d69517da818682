"""Data: where it comes from (`sources`), the splits as arrays (`splits`), the data contract
(`contract`), and stage `validate`'s checks (`checks`, `drift`, `leakage`) and their Great
Expectations suites (`validation`)."""
