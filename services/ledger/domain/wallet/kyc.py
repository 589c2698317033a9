# moved: services/ledger/wallet/domain/kyc.py; kept for habits' files (tests/e2e/test_wallet_journey.py)
from services.ledger.wallet.domain.kyc import resident_id_check_char as resident_id_check_char
