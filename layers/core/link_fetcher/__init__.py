"""link-fetcher core: settings, CDSE client, granule parsing and filters, sinks, relay and the CLI."""
