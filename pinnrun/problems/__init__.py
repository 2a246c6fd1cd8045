"""PDE problems: domain, loss terms with their residuals, and a reference solution."""
