"""DuckDBExampleGen: the query-based ExampleGen for the embedded warehouse."""
