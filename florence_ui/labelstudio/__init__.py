"""Label Studio: conversion (pure), the SDK client, the URL/key access rules, the local server."""
