"""Media worker: turns a seller's uploaded original into safe, resized variants on a CDN."""
