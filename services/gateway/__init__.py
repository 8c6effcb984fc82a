"""Gateway service: jobs (submit, get, watch, cancel, list), uploads and downloads; state in JetStream KV."""
