"""Pictures people would rather look at than read: contact sheets, curves."""
