"""JSON Schemas of the files edgepack writes (bundle manifests), versioned."""
