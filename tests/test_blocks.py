"""A contract over every block type: documented fields, secrets as SecretStr, examples,
registration, and a save/load round trip on the real Prefect server."""

import typing

import pytest
from pydantic import SecretStr

from blocks import ALL_BLOCKS, DataRegion, OpenSearchCatalog, ResultsStore

SECRET_WORDS = ("password", "secret", "key", "token")


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.__name__)
def test_block_contract(block):
    assert block.get_code_example() and "load(" in block.get_code_example()
    assert block.get_description()
    for name, field in block.model_fields.items():
        assert field.description, f"{block.__name__}.{name} has no description"
        if any(w in name for w in SECRET_WORDS):
            args = typing.get_args(field.annotation) or (field.annotation,)
            assert SecretStr in args, f"{block.__name__}.{name} must be a SecretStr"


def test_results_store_needs_a_target():
    with pytest.raises(ValueError, match="either path"):
        ResultsStore()


def test_blocks_register_save_and_load(stack):
    for block in ALL_BLOCKS:
        block.register_type_and_schema()
    DataRegion(
        region="eu-west-1",
        mount="/fsx",
        scheduler_address="tls://10.0.0.1:8786",
        tls_client_key="PRIVATE",
    ).save("contract-eu-west-1", overwrite=True)
    loaded = DataRegion.load("contract-eu-west-1")
    assert loaded.scheduler_address == "tls://10.0.0.1:8786"
    assert loaded.tls_client_key.get_secret_value() == "PRIVATE"
    assert "PRIVATE" not in repr(loaded)
    loaded.delete("contract-eu-west-1")
    OpenSearchCatalog(
        hosts=["https://search.example"], auth="basic", username="u", password="p"
    ).save("contract-catalog", overwrite=True)
    assert OpenSearchCatalog.load("contract-catalog").password.get_secret_value() == "p"
    OpenSearchCatalog.load("contract-catalog").delete("contract-catalog")
