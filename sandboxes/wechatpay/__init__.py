"""WeChat Pay API v3 sandbox: a strict stand-in for api.mch.weixin.qq.com (see README.md)."""
