"""Deploy unit `notify`: tells vendors what happened, by email and by webhook."""
