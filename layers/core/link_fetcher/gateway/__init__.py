"""Stream gateway (SPEC §8): the Redis delivery streams over REST, WebSocket and GraphQL, with an ops console."""
