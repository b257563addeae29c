-- Run once against the compose PostgreSQL: the candle database beside Dagster's own.
CREATE DATABASE xau OWNER xau;
