"""The registry: MLflow versions and aliases (`client`), the champion's audit trail (`audit`),
one writer at a time (`locks`), the promotion gates (`gates`) and lineage (`lineage`)."""
