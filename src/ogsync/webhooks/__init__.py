"""Ordergroove webhooks: signatures now; the receiver, inbox and deletions build on it."""
