CREATE DATABASE juhe_gateway;
CREATE DATABASE juhe_cashier;
CREATE DATABASE juhe_ledger;
CREATE DATABASE juhe_routing;
CREATE DATABASE juhe_settlement;
CREATE DATABASE juhe_marketing;
