"""One module per tab: build(ctx) lays it out, wire(ctx) attaches its events, handlers are plain functions."""
