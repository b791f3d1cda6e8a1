"""Everything that speaks to CDSE (SPEC §2, §3, §9), and nothing else: the adapters below import no source.

- `identity`: Keycloak tokens for the account (`TokenProvider`, `token_provider`).
- `products`: the product model family (pydantic `CdseProduct`, msgspec `ListedProduct`, one set of constraints)
  and its translation to a granule record; the keep/skip criteria.
- `search`: `GET /odata/v1/Products` pages (`CdseCatalogue`) and one product by Id (`ProductLookup`).
- `deleted_products`: the DeletedProducts entity, its deletion record, `DeletedProductsCatalogue`.
- `notifications`: a subscription notification, pushed or read from a PULL queue (`parse_notifications`).
- `subscriptions`: the Subscriptions API (`SubscriptionsApi`: create, list, delete, PULL read and ack).
- `downloads`: a product's download URL and the opener of its bytes (`CdseProducts`).
"""
