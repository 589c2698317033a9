"""Identity-verification provider sandbox (KYC): approves or rejects by rules a test controls."""
