"""The batch CLI's engine room: jobs, the results.jsonl file, the runner, batched generation, Ray."""
