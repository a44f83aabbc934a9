"""`make bench`: dfprep against a same-run reference baseline on a generated corpus."""
