"""The wallet's HTTP API (`/v1/wallet/...`, `/v1/imports/...`): routes, schemas, who may do what."""
