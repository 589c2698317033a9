"""`python -m sandboxes.bank`: serve on 127.0.0.1:$JUHE_SANDBOX_BANK_PORT (default 8104)."""

from sandboxes.bank.app import create_app
from sandboxes.bank.settings import BankSettings
from sandboxes.common.runner import serve

if __name__ == "__main__":
    serve(create_app(BankSettings.from_env()), port_env="JUHE_SANDBOX_BANK_PORT", default_port=8104)
