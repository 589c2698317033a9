"""Bank payout sandbox (划付): Juhe's own documented, signed JSON protocol, see README.md."""
