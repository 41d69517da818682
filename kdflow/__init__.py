"""kdflow: knowledge distillation as one reproducible lifecycle (see README.md)."""
