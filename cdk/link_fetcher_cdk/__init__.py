"""The link-fetcher AWS CDK app: one stack with the network, database, functions, polling, push and delivery."""
