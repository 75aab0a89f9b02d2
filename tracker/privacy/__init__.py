"""Privacy (#17): pseudonyms for phone numbers, opt-outs; retention and erasure to come."""
