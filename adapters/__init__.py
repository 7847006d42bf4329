"""Protocol adapters. They meet only in ``relay`` types; only the composition root imports them."""
