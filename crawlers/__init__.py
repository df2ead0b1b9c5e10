"""Scrapy project that collects public posts about the company and its communities."""
