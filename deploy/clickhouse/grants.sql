-- Access for Glimpse on ClickHouse 24.x-26.x (SQL access control). Replace the passwords, and
-- `glimpse` in `ON glimpse.` if the database has another name. Run as an administrator.
--
-- The collector's own user: it creates and migrates its tables, inserts, drops expired
-- partitions (retention, salt destruction) and deletes superseded copies of closed days.
CREATE USER IF NOT EXISTS glimpse IDENTIFIED BY 'change-me';
GRANT CREATE TABLE, CREATE VIEW, DROP TABLE, DROP VIEW, ALTER, INSERT, SELECT ON glimpse.* TO glimpse;
GRANT SELECT ON system.parts TO glimpse;

-- Dashboards (Grafana, `glimpse dashboard`, Metabase, ...): read the aggregate tables that
-- schema/queries reads, and nothing else: not the salts (glimpse_salts), not the raw events.
CREATE ROLE IF NOT EXISTS glimpse_dashboards;
GRANT SELECT ON glimpse.stats_hourly TO glimpse_dashboards;
GRANT SELECT ON glimpse.stats_daily TO glimpse_dashboards;
GRANT SELECT ON glimpse.closed_days TO glimpse_dashboards;
GRANT SELECT ON glimpse.stats_hourly_closed TO glimpse_dashboards;
GRANT SELECT ON glimpse.stats_daily_closed TO glimpse_dashboards;
GRANT SELECT ON glimpse.visits_hourly TO glimpse_dashboards;
GRANT SELECT ON glimpse.visit_pages_daily TO glimpse_dashboards;
GRANT SELECT ON glimpse.engagement_daily TO glimpse_dashboards;
GRANT SELECT ON glimpse.revenue_daily TO glimpse_dashboards;
GRANT SELECT ON glimpse.props_daily TO glimpse_dashboards;
GRANT SELECT ON glimpse.props_daily_closed TO glimpse_dashboards;
GRANT SELECT ON glimpse.dropped_daily TO glimpse_dashboards;
CREATE USER IF NOT EXISTS dashboards IDENTIFIED BY 'change-me-too' SETTINGS readonly = 1;
GRANT glimpse_dashboards TO dashboards;
SET DEFAULT ROLE glimpse_dashboards TO dashboards;

-- `glimpse dashboard` answers filtered questions (and goals, and visit metrics by any
-- dimension) from the raw events within their retention: its own user reads the aggregates
-- and the raw events, still not the salts. Grafana and other tools keep `dashboards`.
CREATE ROLE IF NOT EXISTS glimpse_stats_api;
GRANT glimpse_dashboards TO glimpse_stats_api;
GRANT SELECT ON glimpse.events TO glimpse_stats_api;
CREATE USER IF NOT EXISTS stats_api IDENTIFIED BY 'change-me-three' SETTINGS readonly = 1;
GRANT glimpse_stats_api TO stats_api;
SET DEFAULT ROLE glimpse_stats_api TO stats_api;
