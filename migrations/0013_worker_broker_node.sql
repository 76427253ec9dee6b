-- The RabbitMQ node each worker's consumer connection is on (amqp://host:port,
-- no credentials), written with every heartbeat (src/Worker/Registry.ts):
-- on a cluster, the dashboard shows where each worker is after a failover.
-- NULL while the worker is disconnected, and for rows written before this.
ALTER TABLE workers ADD COLUMN broker_node text;
