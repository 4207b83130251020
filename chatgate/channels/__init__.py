"""Channel adapters: turn a platform's wire format into core values and back."""
