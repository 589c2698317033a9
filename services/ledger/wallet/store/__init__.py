"""The wallet's persistence: holders, sub-accounts, operations, bills, bonus lots, top-up orders, bulk imports."""
