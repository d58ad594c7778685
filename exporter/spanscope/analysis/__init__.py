"""Analysis of finished requests: features, rollouts, impact and what-if, experiments, rollups, insights."""
