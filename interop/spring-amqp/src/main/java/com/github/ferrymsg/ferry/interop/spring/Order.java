package com.github.ferrymsg.ferry.interop.spring;

import java.math.BigDecimal;
import java.util.List;

/**
 * The payload class of the interop tests: what a Spring application would
 * exchange as JSON, named by the {@code __TypeId__} header.
 */
public record Order(String id, String customer, int quantity, BigDecimal total, boolean express, List<String> items) {
}
