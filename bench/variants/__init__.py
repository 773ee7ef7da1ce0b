"""The designs this project replaces, as small servers with the service's routes over the same data.

Each serves ``/now``, ``/healthz``, ``/redis/kv/{key}``, ``/mysql/items/{id}``, ``/mysql/sleep?s=``,
``/ignite/cache/{key}``, ``/ignite/items/{id}`` and ``/fanout/{id}`` (GET only) with the service's
JSON bodies, reading addresses from ``app.settings`` (so ``ASYNCSTACK_*`` variables apply):

- ``blocking``: pymysql, pymongo, redis-py and pyignite's sync client called in the handler;
- ``threadpool``: the same calls through ``loop.run_in_executor`` on a pool of threads;
- ``celery_server`` + ``celery_tasks``: the same calls as Celery tasks (Redis broker and result
  backend), awaited from Tornado without blocking its loop; with ``--broker rabbitmq`` and the
  worker app ``rabbitmq_worker_app``, the same with RabbitMQ as the broker.

``common`` holds the blocking calls, ``web`` the routes and the Tornado application they share.
"""
