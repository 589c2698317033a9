"""The big wallet (大钱包): holders, KYC, typed sub-accounts, entitlements and the postings of wallet flows.

Pure Python (no FastAPI, SQLAlchemy or asyncpg): the store and the routes call into it.
"""
