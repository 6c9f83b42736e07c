"""The session's master key. The deployment's pseudonym key is one row of `customer_keys`,
wrapped by whichever master key made it first, and a test session shares one database: every
stack and every test that seals customers' data in it must use the same master key."""

from shared.crypto.secrets import new_master_key

SESSION_MASTER_KEY = new_master_key()
