"""Running workflows on a Ray cluster: long-lived workers that keep their caches, and a router
that sends each prompt to the worker already holding its models.

* ``keys``     -- routing keys of a prompt's nodes, the same on every machine
* ``router``   -- which worker takes a prompt (pure Python: cache affinity, bounded load)
* ``worker``   -- the Ray actor: an executor, its caches, the files its outputs write
* ``protocol`` -- the job, events and result that travel through Ray's object store
* ``files``    -- the files a worker sent, placed in this side's output folders
* ``backend``  -- connecting, starting workers, dispatching and following prompts
* ``sweep``    -- ``latentgraph batch --sweep`` flags and the prompts they make
* ``batch``    -- ``latentgraph batch``, on the local executor or the cluster

Ray (the ``ray`` extra) is imported by ``backend`` only, when a cluster is asked for.
"""
