"""Alipay OpenAPI v2 (RSA2) sandbox: a real server that plays Alipay for development and tests."""
