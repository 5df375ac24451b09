"""The worker: registers tasks, claims runs from a server, runs each attempt in a child process."""
