"""Evaluation: the axes every model is scored on (`axes`, measured by `metrics`, `robustness`,
`ood`, `memory`), the deployable forms (`compress`), the paired comparison with the champion
(`compare`), and what people read (`report`, `plots`)."""
