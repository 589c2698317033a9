"""UnionPay online payment (全渠道, ACP 5.1.0) sandbox: see README.md and app.create_app."""
