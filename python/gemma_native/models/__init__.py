"""Architecture descriptions: config parsing and checkpoint-to-engine tensor mapping."""
