-- docker-compose.yml: runs once, when the PostgreSQL volume is initialised (docker-entrypoint-initdb.d).
-- One login role for the services, not a superuser, owning one database per service (as in the launcher
-- and the Kubernetes manifests). Its password comes from the container's JUHE_DB_PASSWORD (psql \getenv),
-- never written here; unset, the CREATE ROLE below fails and the initialisation stops. Use a URL-safe
-- value: the services put it in their database URL.
\getenv juhe_db_password JUHE_DB_PASSWORD
CREATE ROLE juhe LOGIN PASSWORD :'juhe_db_password';
CREATE DATABASE juhe_gateway OWNER juhe;
CREATE DATABASE juhe_cashier OWNER juhe;
CREATE DATABASE juhe_ledger OWNER juhe;
CREATE DATABASE juhe_routing OWNER juhe;
CREATE DATABASE juhe_settlement OWNER juhe;
CREATE DATABASE juhe_marketing OWNER juhe;
CREATE DATABASE juhe_migration OWNER juhe;
