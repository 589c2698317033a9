"""Moved: services/ledger/wallet/domain/ (the wallet package); kept only for a re-export below."""
