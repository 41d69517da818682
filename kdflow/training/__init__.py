"""Training: the model zoo and checkpoints (`models`), the loop shared by teacher and student
(`loop`), the distillation losses (`losses`), augmentation, and where it runs (`device`,
`distributed`)."""
