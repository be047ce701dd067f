import pytest

from services.identity.security import NationalIdVault, mask_national_id, normalise_national_id
from shared.errors import DomainError


@pytest.mark.parametrize("value", ["A123456789", "a123456789 ", "F131104093", "A800000014", "AC01234567"])
def test_valid_numbers(value):
    assert normalise_national_id(value) == value.strip().upper()


@pytest.mark.parametrize("value", ["A123456788", "A323456789", "1234567890", "A12345678", "", "AZ12345678", "A1234567890"])
def test_invalid_numbers_are_refused(value):
    with pytest.raises(DomainError) as info:
        normalise_national_id(value)
    assert info.value.code == "invalid_national_id"


def test_vault_encrypts_hashes_and_masks(tmp_path):
    vault = NationalIdVault.load("", "", tmp_path)
    sealed, lookup, masked = vault.seal("999001", "A123456789")
    assert "A123456789" not in sealed and masked == mask_national_id("A123456789") == "A1*****789"
    assert vault.open("999001", sealed) == "A123456789"
    # The lookup hash is keyed and tenant-bound: the same number in another school hashes differently.
    assert lookup == vault.lookup_hash("999001", "A123456789") != vault.lookup_hash("999002", "A123456789")
    with pytest.raises(Exception):
        vault.open("999002", sealed)  # ciphertext bound to its school
