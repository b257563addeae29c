"""PostgreSQL candle store: schema, migrations, upsert and fetch coverage."""
