-- Runs once, when the postgres service starts on an empty volume: one database per sim,
-- because the two sims are two systems and never share tables (docs/architecture.md §3 (Components)).
CREATE DATABASE trustly;
CREATE DATABASE cms;
